"""The errors this plugin raises; each message names the file it is about."""


class GGUFImportError(ValueError):
    """A GGUF file or download that cannot be turned into a LitGPT checkpoint."""


class NotSupportedError(GGUFImportError):
    """The file is valid GGUF, but uses an architecture, tensor type or tokenizer we do not convert."""


class ChecksumError(GGUFImportError):
    """A downloaded file's SHA-256 is not the one we expect."""


class DownloadError(GGUFImportError):
    """pip could not fetch a package (no network, or the index is unreachable)."""
