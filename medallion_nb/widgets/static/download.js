// A download button whose file never touches the server's disk: the kernel streams the
// bytes in chunks over the widget's comm, and the browser saves them from a Blob.
function render({ model, el }) {
  el.classList.add("mnb-download-widget");
  const button = document.createElement("button");
  button.className = "jupyter-button mod-primary mnb-download-button";
  button.textContent = model.get("label");
  const status = document.createElement("span");
  status.className = "mnb-download-status";
  el.append(button, status);
  let chunks = [];
  let file = null;
  button.onclick = () => {
    button.disabled = true;
    status.textContent = "preparing\u2026";
    model.send({ event: "request" });
  };
  model.on("change:label", () => { button.textContent = model.get("label"); });
  model.on("msg:custom", (msg, buffers) => {
    if (msg.event === "begin") {
      chunks = []; file = msg;
    } else if (msg.event === "chunk") {
      for (const b of buffers) chunks.push(b instanceof DataView ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : b);
    } else if (msg.event === "end" && file) {
      const url = URL.createObjectURL(new Blob(chunks, { type: file.mime }));
      const a = document.createElement("a");
      a.href = url; a.download = file.filename; a.style.display = "none";
      document.body.appendChild(a); a.click();
      setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 5000);
      chunks = []; file = null;
      button.disabled = false; status.textContent = msg.text;
    } else if (msg.event === "error") {
      chunks = []; file = null;
      button.disabled = false; status.textContent = msg.text;
    }
  });
}

export default { render };
