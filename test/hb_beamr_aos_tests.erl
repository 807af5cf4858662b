%%% @doc Real AO modules end to end: aos-2-pure-xs.wasm (memory64, legacy exceptions)
%%% and test-calling.wasm, from ../shared/fixtures/hyperbeam (MANIFEST.md, AOS.md).
-module(hb_beamr_aos_tests).

-include_lib("eunit/include/eunit.hrl").

-import(hb_beamr_aos, [eval/2, output/1]).
-import(hb_beamr_test_util, [with_shared/2]).

-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

aos_test_() ->
    {timeout, 120, fun() ->
        with_shared(?AOS, fun(Wasm) ->
            {ok, I, _Imports, Exports} = hb_beamr:start(Wasm),
            ?assert(lists:member({func, "handle", "(II)I"}, Exports)),
            ?assert(lists:member({func, "malloc", "(I)I"}, Exports)),
            ?assertEqual([], [E || {_, "__hb_beamr" ++ _, _} = E <- Exports]),
            ?assertEqual({ok, 193 * 65536}, hb_beamr_io:size(I)),
            {ok, Ptr} = hb_beamr_io:write_string(I, <<"Hello, AO!">>),
            ?assertEqual({ok, <<"Hello, AO!">>}, hb_beamr_io:read_string(I, Ptr)),

            ?assertEqual({ok, <<"2">>}, output(eval(I, <<"1 + 1">>))),
            Loop = eval(I, <<"local s=0 for i=1,1000000 do s=s+i end return s">>),
            ?assertEqual({ok, <<"500000500000">>}, output(Loop)),

            %% A Lua error is a result, not a trap; the process keeps working.
            Error = eval(I, <<"error('boom')">>),
            ?assertMatch({match, _}, re:run(Error, <<"\"Error\":\"[^}]*boom">>)),
            ?assertEqual({ok, <<"3">>}, output(eval(I, <<"1 + 2">>))),

            %% State persists between messages and through a snapshot.
            _ = eval(I, <<"counter = 41">>),
            ?assertEqual({ok, <<"42">>}, output(eval(I, <<"counter = counter + 1 return counter">>))),
            {ok, Snapshot} = hb_beamr:serialize(I),
            ?assertEqual(193 * 65536, byte_size(Snapshot)),
            {ok, Fresh, _, _} = hb_beamr:start(Wasm),
            ok = hb_beamr:deserialize(Fresh, Snapshot),
            ?assertEqual({ok, <<"43">>}, output(eval(Fresh, <<"counter = counter + 1 return counter">>))),
            ?assertEqual({ok, <<"43">>}, output(eval(I, <<"counter = counter + 1 return counter">>))),
            hb_beamr:stop(I),
            hb_beamr:stop(Fresh)
        end)
    end}.

test_calling_test() ->
    with_shared("fixtures/hyperbeam/test-calling.wasm", fun(Wasm) ->
        {ok, I, _, Exports} = hb_beamr:start(Wasm),
        ?assert(lists:member({func, "malloc", "(I)I"}, Exports)),
        ?assertEqual({ok, 259 * 65536}, hb_beamr_io:size(I)),
        {ok, Ptr} = hb_beamr_io:malloc(I, 100),
        ?assert(Ptr > 0),
        ?assertEqual({error, malloc_failed}, hb_beamr_io:malloc(I, 128 * 1024 * 1024)),
        {ok, Str} = hb_beamr_io:write_string(I, <<"Hello, World!">>),
        ?assertEqual({ok, <<"Hello, World!">>}, hb_beamr_io:read_string(I, Str)),
        hb_beamr:stop(I)
    end).

wamr_compat_off_test() ->
    with_shared("fixtures/hyperbeam/test-calling.wasm", fun(Wasm) ->
        {ok, I, _, _} = hb_beamr:start(Wasm, #{wamr_compat => false}),
        ?assertEqual({ok, 258 * 65536}, hb_beamr_io:size(I)),
        hb_beamr:stop(I)
    end).
