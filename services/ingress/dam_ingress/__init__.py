"""The ingress: answers every request fast, admits what the dam can take."""
