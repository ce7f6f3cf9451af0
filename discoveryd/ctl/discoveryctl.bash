# bash completion for discoveryctl (installed as
# share/bash-completion/completions/discoveryctl).
_discoveryctl()
{
	local cur prev words cword
	_init_completion 2>/dev/null || {
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD-1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	local commands="ready notready auto invalidate broadcast services service agents endpoints cacheready events drain webhooks token version help"
	local global="-s --server --token --token-file --cacert --json --timeout --idempotency-key -h --help -V --version"

	case $prev in
	-s|--server)
		COMPREPLY=($(compgen -W "http://127.0.0.1:5916" -- "$cur")); return ;;
	--token-file|--cacert|--secret-file|--ca-file|--file)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--role)
		COMPREPLY=($(compgen -W "agent admin reader" -- "$cur")); return ;;
	--ttl|--timeout)
		COMPREPLY=($(compgen -W "30s 5m 1h 24h" -- "$cur")); return ;;
	--kinds)
		COMPREPLY=($(compgen -W "readiness invalidate command readiness,invalidate" -- "$cur")); return ;;
	--token|--command|--header|--value|--after|--instance|--sub|--url|--services|--max-in-flight)
		return ;;
	esac

	# The command is the first word that is not an option or its value.
	local i command=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s|--server|--token|--token-file|--cacert|--timeout|--idempotency-key|--ttl|--service|--instance|--command|--header|--value|--after|--role|--secret-file|--sub|--url|--ca-file|--kinds|--services|--max-in-flight|--file)
			((i++)) ;;
		-*) ;;
		*) command=${words[i]}; break ;;
		esac
	done

	if [[ -z $command ]]; then
		COMPREPLY=($(compgen -W "$commands $global" -- "$cur"))
		return
	fi
	case $command in
	ready) COMPREPLY=($(compgen -W "--ttl $global" -- "$cur")) ;;
	invalidate) COMPREPLY=($(compgen -W "--service $global" -- "$cur")) ;;
	broadcast) COMPREPLY=($(compgen -W "--command --service --instance --header --value $global" -- "$cur")) ;;
	events) COMPREPLY=($(compgen -W "--after --follow -f $global" -- "$cur")) ;;
	endpoints) COMPREPLY=($(compgen -W "--watch -w $global" -- "$cur")) ;;
	webhooks)
		if [[ $cword -eq $((i + 1)) ]]; then
			COMPREPLY=($(compgen -W "list test replay enable delete put" -- "$cur"))
		elif [[ ${words[i + 1]} == put ]]; then
			COMPREPLY=($(compgen -W "--url --secret-file --ca-file --kinds --services --max-in-flight --file --start-now $global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		fi ;;
	token)
		if [[ $cword -eq $((i + 1)) ]]; then
			COMPREPLY=($(compgen -W "issue" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "--role --service --ttl --sub --secret-file" -- "$cur"))
		fi ;;
	*) COMPREPLY=($(compgen -W "$global" -- "$cur")) ;;
	esac
}
complete -F _discoveryctl discoveryctl
