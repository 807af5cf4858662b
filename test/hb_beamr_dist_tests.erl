%%% @doc An instance is usable from another node: calls, imports, memory and stop are
%%% forwarded to the instance's node (HyperBEAM's handles are plain pids).
-module(hb_beamr_dist_tests).

-include_lib("eunit/include/eunit.hrl").

remote_node_test_() ->
    {setup, fun hb_beamr_test_util:start_peer/0, fun hb_beamr_test_util:stop_peer/1, fun({_, Node}) -> {timeout, 60, fun() -> remote(Node) end} end}.

remote(Node) ->
    Wasm = hb_beamr_test_util:fixture("core.wat"),
    {ok, Local, _, _} = hb_beamr:start(Wasm),
    Here = node(),
    ?assertEqual({ok, [3]}, erpc:call(Node, hb_beamr, call, [Local, "add", [1, 2]])),
    %% The import fun runs where the instance lives.
    Fun = fun(S, #{args := [A, B]}, _) -> {ok, [A * B], {S, node()}} end,
    ?assertEqual({ok, [6], {x, Here}}, erpc:call(Node, hb_beamr, call, [Local, "call_host_add", [2, 3], Fun, x])),
    ?assertEqual({ok, <<"hello">>}, erpc:call(Node, hb_beamr_io, read, [Local, 16, 5])),
    {ok, Remote, _, _} = erpc:call(Node, hb_beamr, start, [Wasm]),
    ?assertEqual({ok, [4]}, hb_beamr:call(Remote, "add", [2, 2])),
    ?assertEqual({ok, 65536}, hb_beamr_io:size(Remote)),
    ?assertEqual(ok, hb_beamr:stop(Remote)),
    ?assertEqual({error, stopped}, hb_beamr:call(Remote, "add", [2, 2])),
    hb_beamr:stop(Local).
