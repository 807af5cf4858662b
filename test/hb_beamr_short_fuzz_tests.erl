%%% @doc The standing fuzzer in `make test': a short fixed-seed run of `make fuzz', and the
%%% replay of every module in test/fuzz_corpus (modules that once killed, hung or bloated
%%% a child VM; each `.txt' beside it says how). Both run in child VMs
%%% (`hb_beamr_fuzz_run'): no module may kill its VM, hang a call, start or stop past its
%%% bound, panic, leave an executor behind or grow RSS.
-module(hb_beamr_short_fuzz_tests).

-include_lib("eunit/include/eunit.hrl").

-define(SEED, 20261204).
-define(MODULES, 40).

short_fixed_seed_run_test_() ->
    {timeout, 180, fun() ->
        Dir = filename:join(scratch(), "modules"),
        Files = hb_beamr_fuzz_run:generate(Dir, ?SEED, ?MODULES),
        assert_clean("short fuzz run (seed " ++ integer_to_list(?SEED) ++ ")", Files),
        file:del_dir_r(Dir)
    end}.

corpus_replay_test_() ->
    {timeout, 300, fun() ->
        Files = lists:sort(filelib:wildcard(filename:join(corpus(), "*.wasm"))),
        assert_clean("fuzz corpus replay", Files)
    end}.

assert_clean(Title, Files) ->
    Started = erlang:monotonic_time(millisecond),
    Tally = hb_beamr_fuzz_run:run(Files, #{corpus => none}),
    io:format(user, "~n  ~s: ", [Title]),
    hb_beamr_fuzz_run:report(Tally, erlang:monotonic_time(millisecond) - Started),
    ?assertEqual(length(Files), maps:get(modules, Tally) + length(vm_ends(Tally))),
    ?assertEqual([], [{filename:basename(F), K, P} || #{file := F, kind := K, phase := P} <- maps:get(failures, Tally)]).

%% Failures that ended a child VM mid-module (that module was not counted as run).
vm_ends(#{failures := Failures}) ->
    [F || #{kind := K} = F <- Failures, K =:= vm_died orelse K =:= vm_hang].

corpus() ->
    filename:join([root(), "test", "fuzz_corpus"]).

scratch() ->
    filename:join([root(), "_build", "fuzz", "eunit"]).

root() ->
    {ok, Dir} = file:get_cwd(),
    Dir.
