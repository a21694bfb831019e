"""Every default of `occreid serve`, in one place (the command line's options use these)."""

HOST = "127.0.0.1"
PORT = 8765
UPLOAD_LIMIT_MB = 10.0
# A query is one person crop: an image above this many pixels is refused before it is decoded (PIL's own
# decompression-bomb limit, about 89 megapixels, is far above what a query needs).
MAX_IMAGE_PIXELS = 25_000_000
TOPK = 10
MAX_TOPK = 200
PAGE_SIZE = 48
MAX_PAGE_SIZE = 500
# Room for the multipart framing around an upload at the limit.
MULTIPART_OVERHEAD = 64 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
