"""WADO-RS (PS3.18 §10.4, Table 10.4.1-1): the retrieve routes, one module per resource kind.

:mod:`.instances` (study, series, instance), :mod:`.metadata`, :mod:`.pixels` (frames and
``/pixeldata``) and :mod:`.bulk` register their routes, per level from a table
(:mod:`app.api.targets`), on the one :data:`router`; each makes one retrieve-service call and
writes its answer (:mod:`.common`).
"""

from app.api.wado import bulk, instances, metadata, pixels
from app.api.wado.common import router

__all__ = ["bulk", "instances", "metadata", "pixels", "router"]
