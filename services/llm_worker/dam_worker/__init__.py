"""The LLM worker: calls the backend within its slots, acks or retries, reclaims the dead's work."""
