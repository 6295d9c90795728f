"use strict";
fetch("/v1/hub-info").then(r => r.json()).then(info => {
  document.getElementById("status").textContent = "Instance " + info.result.instance_id;
});
