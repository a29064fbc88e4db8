"""The chat domain: Discord's rules, apart from any socket or HTTP request.

Permissions (``permissions``), the JSON objects clients read (``objects``), what a
message may hold and how it is checked (``validation``, and one module per part:
embeds, mentions, replies, attachments, reactions, components), DMs, webhooks,
application commands and interactions. Pure where it can be: functions of values,
tested without a gateway; the actors that apply these rules (``gateway.guild``,
``gateway.channel``) and the REST handlers (``gateway.rest``) call in here.

Layers: ``gateway`` -> ``chat`` -> ``storage``; ``chat`` never imports the gateway's
actors or servers (only its sans-I/O ``gateway.protocol`` builders).
"""
