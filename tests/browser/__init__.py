"""Tests in a real browser (Chromium driven by Playwright) against a running server."""
