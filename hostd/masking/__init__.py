"""The one masker every sink uses: rules, the streaming masker, the escape-aware screen
masker, command lines in text. Pure (bytes in, bytes out); imports only hostd's top."""
