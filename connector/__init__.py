"""wa-relay connector: holds the WhatsApp sockets (through the Node bridge) and relays their traffic."""
