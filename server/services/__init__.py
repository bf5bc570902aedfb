"""The service's domains: each module defines its requests, handlers, events and binding."""
