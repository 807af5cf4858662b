%%% @doc What module preparation does, seen through the API on the project's own
%%% memory64 + legacy-exceptions fixture.
-module(hb_beamr_prepare_tests).

-include_lib("eunit/include/eunit.hrl").

start(Opts) ->
    {ok, I, [], Exports} = hb_beamr:start(hb_beamr_test_util:fixture("memory64.wat"), Opts),
    {I, Exports}.

memory64_test() ->
    {I, Exports} = start(#{}),
    %% Exports keep the i64 signatures of the original module; helper exports are hidden.
    ?assert(lists:member({func, "load", "(I)i"}, Exports)),
    ?assert(lists:member({func, "grow", "(I)I"}, Exports)),
    ?assertEqual([], [E || {_, "__hb_beamr" ++ _, _} = E <- Exports]),
    %% WAMR's extra page: the module uses memory.size/grow and exports no malloc/free.
    ?assertEqual({ok, [2]}, hb_beamr:call(I, "size", [])),
    ?assertEqual({ok, 2 * 65536}, hb_beamr_io:size(I)),
    ?assertEqual({ok, <<"memory64">>}, hb_beamr_io:read_string(I, 8)),
    ?assertEqual({ok, []}, hb_beamr:call(I, "store", [65535, 7])),
    ?assertEqual({ok, [7]}, hb_beamr:call(I, "load", [65535])),
    %% Addresses at and above 2^32 trap as out of bounds; they never wrap to low memory.
    [?assertMatch({error, {trap, out_of_bounds, _}}, hb_beamr:call(I, "load", [A]))
     || A <- [1 bsl 32, (1 bsl 32) + 8, 16#FFFFFFFFFFFFFFFF, 2 * 65536]],
    ?assertMatch({error, {trap, out_of_bounds, _}}, hb_beamr:call(I, "store", [(1 bsl 32) + 8, 1])),
    ?assertEqual({ok, [0]}, hb_beamr:call(I, "load", [0])),
    %% memory.grow: widened results, -1 past the maximum or for sizes >= 2^32. As in WAMR,
    %% the maximum (4 pages) got the extra page too: 5.
    ?assertEqual({ok, [2]}, hb_beamr:call(I, "grow", [1])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow", [3])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow", [1 bsl 32])),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "grow", [2])),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, "size", [])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow", [1])),
    hb_beamr:stop(I).

wamr_compat_off_test() ->
    {I, _} = start(#{wamr_compat => false}),
    ?assertEqual({ok, [1]}, hb_beamr:call(I, "size", [])),
    hb_beamr:stop(I).

legacy_exceptions_test() ->
    {I, _} = start(#{}),
    ?assertEqual({ok, [4]}, hb_beamr:call(I, "guarded", [4])),
    ?assertEqual({ok, [105]}, hb_beamr:call(I, "guarded", [5])),
    ?assertEqual({ok, [6]}, hb_beamr:call(I, "uncaught", [6])),
    ?assertMatch({error, {trap, exception, _}}, hb_beamr:call(I, "uncaught", [7])),
    ?assertEqual({ok, [8]}, hb_beamr:call(I, "uncaught", [8])),
    hb_beamr:stop(I).
