"""`occreid serve`: a local web page and JSON API over a track gallery index (occreid.retrieval).

    app = create_app(ServeState(index=load_index("gallery.npz"), extractor=None, runs=[Path("runs/demo")]))

`app.py` holds the routes, `safety.py` what keeps the server safe (upload limits, image decoding, file paths,
no tracebacks), `runs.py` the run report pages, and `static/` the one page (no CDN, no build step).
"""
