"""Loopback stand-ins for Gemini and E2B and the offline demo (``keyguard demo``)."""
