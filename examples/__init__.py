"""Web apps that serve an aioinfer model: FastAPI (``fastapi_app``) and aiohttp (``aiohttp_app``)."""
