"""
chatd's storage: engines, the database handle, migrations and stores.
"""

from chatd.config import parse_database_url
from chatd.storage.database import Database
from chatd.storage.engines import create_engine


def open_database(config, reactor):
    """
    Make the L{Database} a configuration names; nothing is connected until
    the reactor runs.
    """
    kind, parameters = parse_database_url(config.database_url)
    engine = create_engine(
        kind, parameters,
        password=config.database.password,
        pool_size=config.database.pool_size,
        checkpoint_interval=config.database.checkpoint_interval,
    )
    return database_for(engine, reactor, retries=config.database.retries)


def database_for(engine, reactor, retries=3):
    """
    The L{Database} of an engine: its connection pool, and the message
    writer's and the search index's own connections if the engine has
    them.
    """
    return Database(engine, engine.connection_pool(reactor), retries=retries,
                    writer_pool=engine.writer_pool(reactor),
                    search_pool=engine.search_pool(reactor))
