"""The whole loop wired from one config: :class:`DriftloopSystem` (``wiring.py``), the
composition root of ``driftloop up``, ``driftloop worker``, ``driftloop retrain`` and the demo,
and its HTTP app (``app.py``, built on first use by :meth:`DriftloopSystem.create_app`).

serving → insights → transport → metric store → monitor engine → notification router
→ @retrain → job queue → worker → pipeline → registry alias → serving (hot swap).
"""

from driftloop.system.wiring import DriftloopSystem, SystemOptions

__all__ = ["DriftloopSystem", "SystemOptions"]
