"""What every chat front end shares: feedback payloads and emoji (`feedback`), answer memory,
per-user locks and owner checks (`state`), what a file is (`media`), safe link downloads
(`fetch`), the texts people see when something fails (`texts`), and the adapter contract
with the registry of platforms `anirec run` starts (`adapter`)."""
