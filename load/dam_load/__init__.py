"""The flood runner: named scenarios, before (naive gateway) and after (the dam), a report."""
