"""``make up``'s stack, which the tests reuse: the embedded AWS emulators and the resources they hold, the local
event-source runner and the demo chatbot.

Development-only, so it lives here and not in ``connector/``: the connector's wheel and image carry only what runs in
production (DESIGN section 2). It imports the connector and the Lambda functions; neither imports it.
"""
