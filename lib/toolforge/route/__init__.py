"""The router, the product: what turns a query into tool calls an agent can act on.

- ``result``: ``RouteResult``, ``RouterUnavailable``, every kind of failure, the limits all routers share;
- ``router``: the interface, the one validation gate ``BaseRouter.check``, ``Router`` (the fine-tuned
  model) and ``ROUTERS``, the one table of router names;
- ``agent``: ``route_for_agent``, which never fails an agent, and the one fallback;
- ``heuristic``: the keyword router (every router's fallback);
- ``gbnf`` / ``grammar``: the answer grammar's one text and the greedy choice under it;
- ``vocabulary``: the tokens a trained router may write;
- ``backends/``: the engines (torch and its decoder, llama.cpp);
- ``cli`` and ``shards``: the ``route`` command, over several GPUs when there are.
"""
