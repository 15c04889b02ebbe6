"""The bot settings store on DynamoDB: one item per session in the settings table."""

from __future__ import annotations

from pydantic import ValidationError

from connector.contracts import BotSettings, settings_key
from connector.errors import StoreError
from connector.resources import SETTINGS_TABLE
from connector.store.abstract import SettingsStore
from connector.store.dynamodb.base import DynamoComponent
from connector.store.dynamodb.codec import Item
from connector.types import SessionId


class DynamoSettingsStore(DynamoComponent, SettingsStore):
    """``pk`` = ``settings_key(session)``, ``settings`` = the JSON of ``BotSettings`` (S). JSON rather than one
    attribute per field: the inbound function parses it with the same model, and a field added later needs no
    second encoding."""

    default_table = SETTINGS_TABLE.default_name

    @staticmethod
    def _key(session: str) -> Item:
        return {SETTINGS_TABLE.hash_key: {"S": settings_key(session)}}

    async def get_settings(self, session: SessionId) -> BotSettings | None:
        what = f"the settings of {session}"
        item = await self._get_item(self._key(session), what)
        if item is None:
            return None
        try:
            return BotSettings.model_validate_json(item["settings"]["S"])
        except (KeyError, ValidationError) as e:
            raise StoreError(f"failed to read {what}: {e}") from e

    async def put_settings(self, session: SessionId, settings: BotSettings) -> None:
        item = {**self._key(session), "settings": {"S": settings.model_dump_json()}}
        try:
            await self.client.put_item(TableName=self.table, Item=item)
        except Exception as e:
            raise StoreError(f"failed to save the settings of {session}") from e

    async def delete_settings(self, session: SessionId) -> None:
        try:
            await self.client.delete_item(TableName=self.table, Key=self._key(session))
        except Exception as e:
            raise StoreError(f"failed to delete the settings of {session}") from e
