"""The inbound Lambda: ``inbound.fifo`` → dedup → LID/PN → chatbot → ``outbound.fifo`` (DESIGN sections 1, 5, 6).

Imports only the standard library, boto3/botocore, urllib3, aws-lambda-powertools, tenacity, pydantic and
``connector.contracts``/``connector.resources``: the bundle needs neither aiohttp nor aioboto3.
"""
