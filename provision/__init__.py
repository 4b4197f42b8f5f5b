"""The IT tool: the ``phonekit`` command line, orchestration and (issue #5) config generation."""
