"""Server-rendered web pages for administrators and agents (Jinja2, plain forms, no script).

`ui_routes(services)` gives the routes `create_app` puts before the AWS API's catch-all mount:
everything lives under /ui/, /admin/, /agent/ and /static/, and GET / redirects to /ui/ (the
Customer Profiles API has no GET / operation).
"""

from openprofiles.ui.routes import ui_routes

__all__ = ["ui_routes"]
