"""The web UI of `rapo ui`: run pages and the chat page, served by FastAPI from this package."""
