"""Tables for a paper: LaTeX (booktabs) and Markdown faces of the evaluation, comparison and group screens."""
