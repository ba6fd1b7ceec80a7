"""The `dam` command line: run the services, inspect and operate the pipeline."""
