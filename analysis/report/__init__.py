"""The inspector's report: HTML (Jinja2 templates) and PDF (WeasyPrint), plots by matplotlib."""
