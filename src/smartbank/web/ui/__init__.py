"""The customer web app: server-rendered pages (Jinja2) over the domain services, in English and Chinese."""
