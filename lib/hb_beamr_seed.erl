%%% @doc The seed's raw port protocol (`hb_beamr:wasm_send/2'), on top of the
%%% asynchronous calls of `hb_beamr_async': the messages HyperBEAM's port driver sent and
%%% received, without a reference to tell calls apart.
-module(hb_beamr_seed).

-export([send/2, forget/1]).

%% The process dictionary key of this process's seed calls, and the fewest instances it
%% holds before stopped ones are looked for.
-define(SEED_CALLS, {?MODULE, seed_calls}).
-define(SEED_PRUNE_MIN, 8).

%% @doc Runs one seed command (see `hb_beamr:wasm_send/2').
-spec send(hb_beamr:instance(), term()) -> ok | {error, term()}.
send(Instance, {command, Bin} = Message) when is_binary(Bin) ->
    try binary_to_term(Bin) of
        Command -> command(Instance, Command)
    catch
        error:badarg -> {error, {badarg, Message}}
    end;
send(_Instance, Message) ->
    {error, {badarg, Message}}.

command(Instance, {call, Name, Args}) ->
    call(Instance, Name, Args);
command(Instance, {indirect_call, Index, Args}) when is_integer(Index) ->
    call(Instance, Index, Args);
command(Instance, {import_response, Results}) ->
    reply(Instance, calls(Instance), Results);
command(_Instance, Command) ->
    {error, {badarg, {command, Command}}}.

%% The seed's messages carry no reference, so the process dictionary keeps this process's
%% seed calls on each instance, innermost first: a call made while answering an import
%% nests inside the one waiting. Only those waiting for an import can be nested in, so the
%% others (ended) are forgotten when a call starts.
call(Instance, Func, Args) ->
    Waiting = [Ref || Ref <- calls(Instance), hb_beamr_nif:async_pending(Ref)],
    case hb_beamr_async:start(Instance, Func, Args, #{}, seed) of
        {ok, Ref} -> put_calls(Instance, [Ref | Waiting]), ok;
        {error, Reason} -> put_calls(Instance, Waiting), self() ! {error, Reason}, ok
    end.

%% The innermost call with an import pending is the one answered; calls before it in the
%% list have ended (they have no import pending) and are forgotten.
reply(Instance, [], _Results) ->
    put_calls(Instance, []),
    {error, no_import_pending};
reply(Instance, [Ref | Outer] = Calls, Results) ->
    case hb_beamr_async:reply(Ref, Results) of
        {error, badarg} -> reply(Instance, Outer, Results);
        Answered -> put_calls(Instance, Calls), Answered
    end.

%% One dictionary entry, `{Limit, #{Instance => Calls}}', holds the seed calls of every
%% instance, so that those of stopped instances can be found and dropped: each call keeps
%% its instance's shared state alive. hb_beamr:stop/1 drops the caller's own at once
%% (forget/1); instances stopped by other processes are looked for once the map holds more
%% than `Limit' of them, twice the number live at the last look, so the map stays within
%% twice the instances that are live, at a constant cost per call.
calls(Instance) ->
    {_Limit, Calls} = calls(),
    maps:get(Instance, Calls, []).

calls() ->
    case get(?SEED_CALLS) of
        undefined -> {?SEED_PRUNE_MIN, #{}};
        LimitAndCalls -> LimitAndCalls
    end.

put_calls(Instance, []) ->
    forget(Instance);
put_calls(Instance, Refs) ->
    {Limit, Calls} = calls(),
    keep_calls(Limit, Calls#{Instance => Refs}).

%% @doc Drops this process's seed calls on `Instance' (which is being stopped).
-spec forget(hb_beamr:instance()) -> ok.
forget(Instance) ->
    {Limit, Calls} = calls(),
    keep_calls(Limit, maps:remove(Instance, Calls)).

keep_calls(_Limit, Calls) when map_size(Calls) =:= 0 ->
    _ = erase(?SEED_CALLS),
    ok;
keep_calls(Limit, Calls) when map_size(Calls) > Limit ->
    %% Seed calls are only made on local instances, whose owner lives until they stop.
    Live = maps:filter(fun(Instance, _) -> is_process_alive(Instance) end, Calls),
    keep_calls(max(?SEED_PRUNE_MIN, 2 * map_size(Live)), Live);
keep_calls(Limit, Calls) ->
    _ = put(?SEED_CALLS, {Limit, Calls}),
    ok.
