%%% @doc How `make bench-scale' and `make bench-hibernate' print their rows: a name, the
%%% value with its unit, and the target when there is one.
-module(hb_beamr_bench_rows).
-export([print/1]).

-type row() :: {Name :: string(), Value :: number() | iodata(), Target :: string(), Unit :: string()}.

%% @doc Prints one line a row, aligned.
-spec print([row()]) -> ok.
print(Rows) ->
    [io:format("~-52s ~26s ~10s~n", [Name, value(V, Unit), T]) || {Name, V, T, Unit} <- Rows],
    ok.

value(X, Unit) when is_number(X) -> float_to_list(float(X), [{decimals, 3}]) ++ " " ++ Unit;
value(X, Unit) -> lists:flatten([X, " ", Unit]).
