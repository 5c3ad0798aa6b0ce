"""The terminal face: each screen drawn with rich, through ``console.safe_console`` (user text is data)."""
