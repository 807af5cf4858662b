%%% @doc A minimal hb_beamr host: starts a WAT module whose export `quad' calls the
%%% import `env.double' twice; the import is answered by an Erlang fun.
-module(host_app).

-export([quad/1]).

-define(WAT, <<"
(module
  (import \"env\" \"double\" (func $double (param i32) (result i32)))
  (func (export \"quad\") (param i32) (result i32)
    (call $double (call $double (local.get 0)))))
">>).

%% @doc Returns `{ok, 4 * N, ImportCalls}': `N' quadrupled by wasm that asks Erlang to
%% double it twice, and how many times the import fun ran.
-spec quad(integer()) -> {ok, integer(), non_neg_integer()} | {error, term()}.
quad(N) ->
    {ok, Instance, _Imports, _Exports} = hb_beamr:start(?WAT),
    try
        Double = fun(Calls, #{module := "env", func := "double", args := [X]}, _Opts) ->
                         {ok, [2 * X], Calls + 1}
                 end,
        case hb_beamr:call(Instance, "quad", [N], Double, 0) of
            {ok, [Result], Calls} -> {ok, Result, Calls};
            {error, Reason, _Calls} -> {error, Reason}
        end
    after
        ok = hb_beamr:stop(Instance)
    end.
