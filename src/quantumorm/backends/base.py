"""Where third-party backends have always found the backend contract: it now lives in
:mod:`quantumorm.engine.contract` (beside the engine that drives it); these are its names."""

from ..engine.contract import (
    Backend,
    BackendConnection,
    Capabilities,
    Expiry,
    Explanation,
    Row,
    WriteRequest,
    WriteResult,
    encode_document,
)

__all__ = ["Backend", "BackendConnection", "Capabilities", "Expiry", "Explanation", "Row",
           "WriteRequest", "WriteResult", "encode_document"]
