"""The HTML face of the screens (``fastpose ui``): the journal in the browser, read-only, for the whole lab.

| module       | what it holds                                                                          |
| ------------ | -------------------------------------------------------------------------------------- |
| ``server``   | ``serve``: checks the address and token, binds, runs uvicorn until Ctrl-C               |
| ``app``      | the Starlette application: routes, the ``Guard`` around every request, error pages      |
| ``pages``    | each page's context and JSON twin, built from the screens' models                       |
| ``charts``   | metric curves as inline SVG                                                            |
| ``files``    | the pose panel (TensorBoard events) and PR-curve PNGs, found only through the journal   |
| ``templates/``, ``static/`` | Jinja2 templates (autoescaped) and the one CSS and JS file, shipped in the wheel |

docs/web.md says how a lab runs it; docs/ARCHITECTURE.md, "The web view", its contracts.
"""
