"""assocmem: associative-memory transformers.

Every sublayer of the model is one read of an associative memory,
``mem(q, K, V, temp) = softmax(q·Kᵀ/temp)·V`` (:func:`assocmem.mem`).
"""

from assocmem.errors import AssocmemError, InputError
from assocmem.primitive import MemError, mem

__version__ = "0.1.0"

__all__ = ["mem", "MemError", "AssocmemError", "InputError", "__version__"]
