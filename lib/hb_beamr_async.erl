%%% @doc Asynchronous calls, under the message protocol of `hb_beamr:call_async/4'
%%% (`async') or of the seed (`seed', `hb_beamr_seed'): starting one, and answering its
%%% pending import. The NIF encodes the call's events in the protocol's messages; when it
%%% hands an event straight back instead of sending it, the event is posted here.
-module(hb_beamr_async).

-export([start/5, reply/2]).

%% @doc Starts call `Func(Args)' on a local instance and returns at once; its events come
%% to this process as `Protocol' messages.
-spec start(hb_beamr:instance(), binary() | string() | integer(), [hb_beamr:value()], map(), async | seed) ->
    {ok, hb_beamr:call_ref()} | {error, hb_beamr:reason()}.
start(Instance, Func, Args, Opts, Protocol)
        when is_pid(Instance), node(Instance) =:= node(), is_map(Opts) ->
    case hb_beamr_nif:call_async(Instance, Func, Args, Opts, Protocol) of
        {ok, Ref} -> {ok, Ref};
        {ok, Ref, Message} -> post(Ref, Message), {ok, Ref};
        {error, Reason} -> {error, Reason}
    end;
start(Instance, _Func, _Args, Opts, _Protocol) when is_pid(Instance), not is_map(Opts) ->
    {error, {badarg, {options, Opts}}};
start(Instance, _Func, _Args, _Opts, _Protocol) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Answers the pending import of call `Ref' (see `hb_beamr:reply/2').
-spec reply(hb_beamr:call_ref(), [hb_beamr:value()] | {import_exception, term()} | {error, term()}) ->
    ok | {error, term()}.
reply(Ref, Answer) ->
    %% The NIFs take only a call's resource (the reference start/5 returned): any other
    %% term fails to decode.
    try
        answer(Ref, Answer)
    catch
        error:badarg -> {error, {badarg, {call_ref, Ref}}}
    end.

answer(Ref, {error, Why}) ->
    hb_beamr_nif:async_fail(Ref, Why);
answer(Ref, {import_exception, Reason}) ->
    answered(Ref, hb_beamr_nif:async_exception(Ref, Reason));
answer(Ref, Results) ->
    answered(Ref, hb_beamr_nif:async_reply(Ref, Results)).

%% The call's next event, when the answering NIF took it, is posted.
answered(Ref, {ok, Message}) -> post(Ref, Message);
answered(_Ref, Other) -> Other.

%% An event the NIF took straight from the executor goes into this process's mailbox
%% before any later message of the call (the executor waits for `async_posted').
post(Ref, Message) ->
    self() ! Message,
    hb_beamr_nif:async_posted(Ref).
