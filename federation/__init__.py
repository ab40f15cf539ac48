"""The province side of the federation: daily aggregates per centre, published toward the nation."""
