"""The DynamoDB stores (DESIGN section 4): auth (creds + Signal keys), leases, the LID map, the reply log and
the bot settings.

One module per store over ``base`` (each store owns ONE aiobotocore client, created in ``start()`` and closed in
``stop()``; batch reads and writes within AWS's limits) and ``codec`` (what goes into an item: the auth table's
layout, value encoding, size estimates). boto stays in this package: ``connector.store`` does not import it, so code
that only needs the interfaces or the memory stores never loads aioboto3.
"""

from connector.store.dynamodb.auth import DynamoAuthStore
from connector.store.dynamodb.leases import DynamoLeaseStore
from connector.store.dynamodb.lidmap import DynamoLidMapStore
from connector.store.dynamodb.replylog import DynamoReplyLog
from connector.store.dynamodb.settings import DynamoSettingsStore

__all__ = ["DynamoAuthStore", "DynamoLeaseStore", "DynamoLidMapStore", "DynamoReplyLog", "DynamoSettingsStore"]
