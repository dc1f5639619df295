"""The chat UI's building blocks, kept out of `assistant/app.py` so tests reach them without a browser.

`markdown` escapes document text for Chainlit's Markdown renderer, `sources` and `retrieval_view`
turn pipeline results into what the user sees, `starters` and `options` build the welcome-screen
questions and chat settings, `runtime` holds the per-process retriever and pipeline, and `turn`
drives one question-to-answer exchange through Chainlit's message API.
"""
