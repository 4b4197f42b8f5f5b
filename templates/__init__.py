"""Jinja2 templates shipped as package data (client configs, HTML report)."""
