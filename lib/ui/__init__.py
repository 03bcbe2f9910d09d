"""The only Streamlit code in `lib/`: what every page shares.

* `lib.ui.state`: every session-state key (namespaced per page) with typed getters and setters;
* `lib.ui.resources`: `st.cache_resource` / `st.cache_data` wrappers that only call `lib`; what they
  return is shared by every session and never mutated;
* `lib.ui.jobs`: starting a background job, the one live `job_panel` fragment and the finished note;
* `lib.ui.choosers`: the model chooser (session model / saved run / ImageNet classifier) and the
  image chooser;
* `lib.ui.inside`: the header the three Look inside pages share;
* `lib.ui.navigation`: the router's page list, by section;
* `lib.ui.runner`: keeps Streamlit from clearing the Keras session after every script run.

Import the submodule you need (`from lib.ui import state`); this package imports none of them, so
importing it stays cheap.
"""
