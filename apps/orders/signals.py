"""What other apps hear about orders.

``order_reserved`` is sent after commit, once an order holds stock, with
``order_id: int`` and ``location_ids: list[int]`` (the locations it reserved at), so that
the suppliers app can run its drop-ship order check for supplier locations.
"""

from django.dispatch import Signal

order_reserved = Signal()
