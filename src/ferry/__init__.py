"""ferry, the core library: train once, ship everywhere.

Subpackages by concept (``registry``, ``train``, ``gate``, ``batch``, ``monitor``, ``publish``, ``online``,
``cli``) over the shared basics (``errors``, ``settings``, ``schema``, ``data``, ``scoring``, ``storage``,
``status``, ``demo_data``); ``ARCHITECTURE.md`` says what each owns. Importing ferry starts nothing and imports no
framework: the Prefect flows (``ferry_flows``) and the BentoML service wrap it from outside.
"""
