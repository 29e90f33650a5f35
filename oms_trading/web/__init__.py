"""The HTTP side: aiohttp application, bearer-token auth, JSON API and the web console."""
