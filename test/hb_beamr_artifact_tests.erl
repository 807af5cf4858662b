%%% @doc Compiled artifacts (`hb_beamr:compile/2'), the disk cache (`cache_dir') and
%%% single-flight compilation: what loads, what is refused, and that nothing bad is loaded.
-module(hb_beamr_artifact_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-export([start_counting/2]).

%% A module no other test has compiled (the in-memory cache is VM-wide).
unique_wat() ->
    N = integer_to_binary(erlang:unique_integer([positive])),
    <<"(module (memory (export \"mem\") 1)
        (func (export \"answer\") (result i32) i32.const 42)
        (func (export \"add\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
        (func (export \"unique_", N/binary, "\")))">>.

temp_dir() ->
    Dir = filename:join("/tmp", "hb_beamr_artifact_" ++ os:getpid() ++ "_"
                        ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_path(Dir),
    Dir.

with_dir(Fun) ->
    Dir = temp_dir(),
    try Fun(Dir) after file:del_dir_r(Dir) end.

stats_delta(Before) ->
    maps:map(fun(K, V) -> V - maps:get(K, Before) end, hb_beamr_nif:cache_stats()).

entries(Dir) ->
    {ok, Names} = file:list_dir(Dir),
    lists:sort([N || N <- Names, filename:extension(N) =:= ".hbm"]).

compile_then_start_test() ->
    Wat = unique_wat(),
    {ok, Artifact} = hb_beamr:compile(Wat, #{}),
    ?assertMatch(<<0, "hbbeamr", _/binary>>, Artifact),
    {ok, I, Imports, Exports} = hb_beamr:start(Artifact, #{}),
    ?assertEqual({ok, [42]}, hb_beamr:call(I, "answer", [])),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, <<"add">>, [2, 3])),
    {ok, J, Imports, Exports} = hb_beamr:start(Wat),
    ?assertEqual({ok, 65536}, hb_beamr_io:size(I)),
    hb_beamr:stop(I),
    hb_beamr:stop(J),
    %% start/1 takes an artifact too; compile/2 takes an artifact and re-seals it.
    {ok, K, _, _} = hb_beamr:start(Artifact),
    hb_beamr:stop(K),
    ?assertMatch({ok, <<0, "hbbeamr", _/binary>>}, hb_beamr:compile(Artifact, #{})).

%% An artifact not yet in this VM's memory cache is deserialized, not compiled.
artifact_of_an_evicted_module_is_loaded_not_compiled_test() ->
    with_dir(fun(Dir) ->
        Wat = unique_wat(),
        {ok, Artifact} = hb_beamr:compile(Wat, #{cache_dir => Dir}),
        %% A peer VM has an empty memory cache, and the directory's key.
        with_peer(fun(Node) ->
            Before = erpc:call(Node, hb_beamr_nif, cache_stats, []),
            {ok, I, _, _} = erpc:call(Node, hb_beamr, start, [Artifact, #{cache_dir => Dir}]),
            ?assertEqual({ok, [42]}, erpc:call(Node, hb_beamr, call, [I, "answer", []])),
            After = erpc:call(Node, hb_beamr_nif, cache_stats, []),
            ?assertEqual(1, maps:get(artifact_loads, After) - maps:get(artifact_loads, Before)),
            ?assertEqual(0, maps:get(compiled, After) - maps:get(compiled, Before)),
            %% Without the directory's key the peer refuses it.
            ?assertEqual({error, {invalid_artifact, bad_mac}},
                         erpc:call(Node, hb_beamr, start, [Artifact, #{}]))
        end)
    end).

bad_artifacts_are_refused_test() ->
    {ok, A} = hb_beamr:compile(unique_wat(), #{}),
    Size = byte_size(A),
    Refused = fun(Bin) ->
        case hb_beamr:start(Bin, #{}) of
            {error, {invalid_artifact, _}} -> true;
            Other -> {loaded, Other}
        end
    end,
    %% Every truncation.
    ?assertEqual([], [L || L <- lists:seq(2, Size - 1), Refused(binary:part(A, 0, L)) =/= true]),
    %% A flipped bit anywhere: magic aside (then it is no artifact), all refused.
    Flip = fun(Pos) ->
        <<Pre:Pos/binary, B, Post/binary>> = A,
        <<Pre/binary, (B bxor 16#10), Post/binary>>
    end,
    Positions = lists:seq(8, Size - 1, max(1, Size div 500)) ++ [Size - 1],
    ?assertEqual([], [P || P <- Positions, Refused(Flip(P)) =/= true]),
    ?assertEqual({error, {invalid_artifact, malformed}}, hb_beamr:start(<<A/binary, 0>>, #{})),
    ?assertEqual({error, {invalid_artifact, truncated}}, hb_beamr:start(<<0, "hbbe">>, #{})),
    <<Magic:8/binary, _Version:32/little, Rest/binary>> = A,
    ?assertEqual({error, {invalid_artifact, {format_version, 1}}},
                 hb_beamr:start(<<Magic/binary, 1:32/little, Rest/binary>>, #{})),
    ?assertMatch({error, {invalid_artifact, _}},
                 hb_beamr:start(<<0, "hbbeamr", (crypto_free_bytes(4096))/binary>>, #{})),
    %% Garbage without the magic is treated as wasm and refused as a module.
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:start(crypto_free_bytes(1000), #{})),
    ?assertMatch({error, {invalid_module, _}}, hb_beamr:compile(<<"not wasm">>, #{})).

%% Pseudo-random bytes (no crypto application needed).
crypto_free_bytes(N) ->
    << <<(rand:uniform(256) - 1)>> || _ <- lists:seq(1, N) >>.

bad_options_test() ->
    Wat = unique_wat(),
    [?assertEqual({error, {badarg, {options, {Key, Value}}}}, hb_beamr:compile(Wat, #{Key => Value}))
     || {Key, Value} <- [{cache_dir, 42}, {cache_dir, ""}, {cache_dir, [a]}, {deterministic, yes},
                         {wamr_compat, 1}, {memory_limit, -1}]],
    ?assertEqual({error, {badarg, {options, {cache_dir, 42}}}}, hb_beamr:start(Wat, #{cache_dir => 42})),
    ?assertEqual({error, {badarg, {options, nope}}}, hb_beamr:compile(Wat, nope)),
    ?assertEqual({error, {badarg, wasm}}, hb_beamr:compile(42, #{})),
    %% A cache directory that cannot be made.
    ?assertMatch({error, {cache_dir, _}}, hb_beamr:start(Wat, #{cache_dir => "/proc/hb_beamr_cache"})).

%% Preparation options are built into an artifact: given to start/2, they must match.
artifact_options_must_match_test() ->
    Wat = unique_wat(),
    {ok, A} = hb_beamr:compile(Wat, #{deterministic => true, wamr_compat => false,
                                      memory_limit => 1 bsl 20}),
    {ok, I, _, _} = hb_beamr:start(A, #{deterministic => true, wamr_compat => false, mode => aot}),
    hb_beamr:stop(I),
    ?assertEqual({error, {badarg, {options, {deterministic, false}}}},
                 hb_beamr:start(A, #{deterministic => false})),
    ?assertEqual({error, {badarg, {options, {wamr_compat, true}}}},
                 hb_beamr:start(A, #{wamr_compat => true})),
    ?assertEqual({error, {badarg, {options, {memory_limit, 2097152}}}},
                 hb_beamr:start(A, #{memory_limit => 2 bsl 20})).

%% N processes start the same new module at once: one compiles, the others wait for it.
concurrent_starts_compile_once_test_() ->
    {timeout, 60, fun() ->
        Wat = unique_wat(),
        N = 8,
        Before = hb_beamr_nif:cache_stats(),
        Self = self(),
        Gate = make_ref(),
        Pids = [spawn(?MODULE, start_counting, [Self, {Gate, Wat}]) || _ <- lists:seq(1, N)],
        [P ! Gate || P <- Pids],
        Instances = [receive {started, P, I} -> I after 30000 -> error(timeout) end || P <- Pids],
        Delta = stats_delta(Before),
        ?assertEqual(1, maps:get(compiled, Delta)),
        ?assertEqual(N - 1, maps:get(memory_hits, Delta)),
        [hb_beamr:stop(I) || I <- Instances]
    end}.

-spec start_counting(pid(), {reference(), binary()}) -> ok.
start_counting(Parent, {Gate, Wat}) ->
    receive Gate -> ok end,
    {ok, I, _, _} = hb_beamr:start(Wat, #{}),
    {ok, [42]} = hb_beamr:call(I, "answer", []),
    Parent ! {started, self(), I},
    ok.

disk_cache_persists_across_vms_test_() ->
    {timeout, 120, fun() ->
        with_dir(fun(Dir) ->
            Wat = unique_wat(),
            Opts = #{cache_dir => list_to_binary(Dir)},
            First = with_peer(fun(Node) -> start_in(Node, Wat, Opts) end),
            ?assertMatch(#{compiled := 1, disk_hits := 0}, First),
            [Entry] = entries(Dir),
            {ok, #file_info{mode = KeyMode}} = file:read_file_info(filename:join(Dir, "hb_beamr.key")),
            ?assertEqual(8#600, KeyMode band 8#777),
            %% A fresh VM loads it from disk.
            ?assertMatch(#{compiled := 0, disk_hits := 1}, with_peer(fun(Node) -> start_in(Node, Wat, Opts) end)),
            %% A corrupt entry is recompiled and replaced.
            EntryPath = filename:join(Dir, Entry),
            {ok, Good} = file:read_file(EntryPath),
            ok = file:write_file(EntryPath, binary:part(Good, 0, byte_size(Good) div 2)),
            ?assertMatch(#{compiled := 1, disk_hits := 0}, with_peer(fun(Node) -> start_in(Node, Wat, Opts) end)),
            ?assertMatch(#{compiled := 0, disk_hits := 1}, with_peer(fun(Node) -> start_in(Node, Wat, Opts) end)),
            %% An entry written with another key (a foreign directory's) is not loaded.
            with_dir(fun(Other) ->
                with_peer(fun(Node) -> start_in(Node, Wat, #{cache_dir => Other}) end),
                [Foreign] = entries(Other),
                {ok, _} = file:copy(filename:join(Other, Foreign), EntryPath)
            end),
            ?assertMatch(#{compiled := 1, disk_hits := 0}, with_peer(fun(Node) -> start_in(Node, Wat, Opts) end)),
            ?assertEqual([Entry], entries(Dir))
        end)
    end}.

%% The application env gives a default cache_dir (as it does memory_limit).
env_default_cache_dir_test() ->
    with_dir(fun(Dir) ->
        ok = application:set_env(hb_beamr, cache_dir, Dir),
        try
            {ok, I, _, _} = hb_beamr:start(unique_wat()),
            hb_beamr:stop(I),
            ?assertMatch([_], entries(Dir)),
            %% compile/2 seals with that directory's key.
            {ok, A} = hb_beamr:compile(unique_wat(), #{}),
            ok = application:unset_env(hb_beamr, cache_dir),
            ?assertEqual({error, {invalid_artifact, bad_mac}}, hb_beamr:start(A, #{})),
            {ok, J, _, _} = hb_beamr:start(A, #{cache_dir => Dir}),
            hb_beamr:stop(J)
        after
            application:unset_env(hb_beamr, cache_dir)
        end
    end).

%% Starts `Wat' on `Node' and returns how the module was obtained there.
start_in(Node, Wat, Opts) ->
    Before = erpc:call(Node, hb_beamr_nif, cache_stats, []),
    {ok, I, _, _} = erpc:call(Node, hb_beamr, start, [Wat, Opts]),
    {ok, [42]} = erpc:call(Node, hb_beamr, call, [I, "answer", []]),
    After = erpc:call(Node, hb_beamr_nif, cache_stats, []),
    maps:map(fun(K, V) -> V - maps:get(K, Before) end, After).

with_peer(Fun) ->
    ok = hb_beamr_test_util:distribute(),
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(), args => ["-pa" | code:get_path()]}),
    try Fun(Node) after peer:stop(Peer) end.
