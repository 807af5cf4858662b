%%% @doc `make bench': prints a table of hb_beamr timings beside baselines measured in
%%% the same run. Not a test: nothing here asserts.
-module(hb_beamr_bench).
-export([main/0]).

-define(CALLS, 200000).

-spec main() -> ok.
main() ->
    {ok, Wat} = file:read_file("bench/bench.wat"),
    {ok, I, _, _} = hb_beamr:start(Wat),
    Direct = direct_baselines(),
    rows([
        {"empty NIF call (baseline)", median_us(fun() -> hb_beamr_nif:stop(self()) end), "", "~0.15"},
        {"hb_beamr:call/3 trivial export", median_us(fun() -> {ok, _} = hb_beamr:call(I, "add", [1, 2]) end),
         us(maps:get("direct_call", Direct)), "<= 1.5"},
        {"import round trip (wasm -> Erlang fun -> wasm)", import_round_trip_us(I),
         us(maps:get("direct_import", Direct)), "<= 3"}
    ]),
    hb_beamr:stop(I).

%% Median of single calls, after a warm-up.
median_us(Fun) ->
    [Fun() || _ <- lists:seq(1, 10000)],
    Times = lists:sort([time_ns(Fun) || _ <- lists:seq(1, ?CALLS)]),
    lists:nth(?CALLS div 2, Times) / 1000.

time_ns(Fun) ->
    Started = erlang:monotonic_time(nanosecond),
    Fun(),
    erlang:monotonic_time(nanosecond) - Started.

import_round_trip_us(I) ->
    Echo = fun(S, #{args := [X]}, _) -> {ok, [X], S} end,
    {ok, _, _} = hb_beamr:call(I, "echo_loop", [10000], Echo, ok),
    {Micros, {ok, _, _}} = timer:tc(fun() -> hb_beamr:call(I, "echo_loop", [?CALLS], Echo, ok) end),
    Micros / ?CALLS.

%% The same calls made directly through wasmer from Rust (cargo example direct_call).
direct_baselines() ->
    Exe = filename:join(os:getenv("CARGO_TARGET_DIR"), "release/examples/direct_call"),
    Out = os:cmd(Exe ++ " bench/bench.wat"),
    maps:from_list([{Name, list_to_integer(Ns)} || [Name, Ns] <- [string:lexemes(L, " ") || L <- string:lexemes(Out, "\n")]]).

us(Nanos) -> Nanos / 1000.

rows(Rows) ->
    io:format("~-48s ~12s ~16s ~10s~n", ["benchmark", "hb_beamr us", "baseline us", "target us"]),
    [io:format("~-48s ~12s ~16s ~10s~n", [Name, fmt(V), fmt(B), T]) || {Name, V, B, T} <- Rows],
    ok.

fmt(X) when is_number(X) -> float_to_list(float(X), [{decimals, 3}]);
fmt(X) -> X.
