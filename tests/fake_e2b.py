"""The loopback E2B stand-in (lives in the package for ``keyguard demo``)."""

from keyguard.demo.e2b_server import FakeE2B

__all__ = ["FakeE2B"]
