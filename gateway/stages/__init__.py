"""The governance steps of the request path, one decision per module.

``gateway/pipeline.py`` calls them in the fixed order of DESIGN.md section 2.
"""
