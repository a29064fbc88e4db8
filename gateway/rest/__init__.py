"""The REST API under ``/api/v10`` (aiohttp.web, on the gateway's loop).

One module per resource: ``api`` (the core: gateway, users, applications, channel
messages), ``guilds``, ``invites``, ``reactions``, ``dms``, ``webhooks``,
``attachments``, ``permissions`` (channel overwrites), ``commands`` and
``interactions``; each registers its routes with ``add_routes``. ``errors`` is
Discord's error shape, ``auth`` the ``Authorization`` header, ``ratelimit`` the bucket
middleware, ``app`` the application that puts them together (``start_rest``). The rules
of the chat domain (permissions, message validation, embeds, mentions) live in
``chat``; these modules turn HTTP into calls on it and its answers into JSON.
"""
