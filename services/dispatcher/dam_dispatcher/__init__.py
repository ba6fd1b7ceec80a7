"""The dispatcher: hands intake entries to workers only as fast as they have free slots."""
