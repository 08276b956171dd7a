//! The three embeddings wire formats, as each API documents them:
//! - OpenAI (and every OpenAI-compatible server): `POST {base}/v1/embeddings`
//!   `{"model","input":[...],"encoding_format":"float","dimensions"?}` ->
//!   `{"data":[{"embedding":[...],"index":i},...]}` (sorted here by `index`);
//! - Ollama: `POST {base}/api/embed` `{"model","input":[...],"dimensions"?}` ->
//!   `{"embeddings":[[...],...]}` in input order;
//! - Gemini: `POST {base}/v1beta/models/{model}:batchEmbedContents` with `x-goog-api-key`,
//!   `{"requests":[{"model":"models/{model}","content":{"parts":[{"text"}]},"taskType",
//!   "outputDimensionality"?}]}` -> `{"embeddings":[{"values":[...]},...]}` in input order.

use serde_json::{Value, json};

/// Which API a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Ollama,
    Gemini,
}

/// Whether the texts are passages to index or a question (Gemini embeds them differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Index,
    Query,
}

impl Purpose {
    /// The `purpose` label of the embedding metrics.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Index => "index",
            Purpose::Query => "query",
        }
    }
}

impl Api {
    pub fn parse(provider: &str) -> Option<Self> {
        match provider {
            "openai" => Some(Api::OpenAi),
            "ollama" => Some(Api::Ollama),
            "gemini" => Some(Api::Gemini),
            _ => None,
        }
    }

    /// The request's URL from the base URL (a trailing `/` or, for OpenAI, `/v1` is accepted).
    pub fn url(self, base: &str, model: &str) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Api::OpenAi => format!("{}/v1/embeddings", base.trim_end_matches("/v1")),
            Api::Ollama => format!("{base}/api/embed"),
            Api::Gemini => format!(
                "{}/v1beta/models/{model}:batchEmbedContents",
                base.trim_end_matches("/v1beta")
            ),
        }
    }

    /// The request body for `texts`.
    pub fn body(self, model: &str, texts: &[String], dims: Option<u32>, purpose: Purpose) -> Value {
        match self {
            Api::OpenAi => {
                let mut b = json!({"model": model, "input": texts, "encoding_format": "float"});
                if let Some(d) = dims {
                    b["dimensions"] = json!(d);
                }
                b
            }
            Api::Ollama => {
                let mut b = json!({"model": model, "input": texts});
                if let Some(d) = dims {
                    b["dimensions"] = json!(d);
                }
                b
            }
            Api::Gemini => {
                let task = match purpose {
                    Purpose::Index => "RETRIEVAL_DOCUMENT",
                    Purpose::Query => "RETRIEVAL_QUERY",
                };
                let requests: Vec<Value> = texts
                    .iter()
                    .map(|t| {
                        let mut r = json!({
                            "model": format!("models/{model}"),
                            "content": {"parts": [{"text": t}]},
                            "taskType": task,
                        });
                        if let Some(d) = dims {
                            r["outputDimensionality"] = json!(d);
                        }
                        r
                    })
                    .collect();
                json!({ "requests": requests })
            }
        }
    }

    /// The vectors of an answer, in input order; why not when the answer is not what the API
    /// documents (or has another count than `expected`).
    pub fn vectors(self, answer: &Value, expected: usize) -> Result<Vec<Vec<f32>>, String> {
        let floats = |v: &Value| -> Result<Vec<f32>, String> {
            v.as_array()
                .ok_or("a vector is not an array")?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or("a value is not a number")
                })
                .collect::<Result<_, _>>()
                .map_err(str::to_string)
        };
        let out: Vec<Vec<f32>> = match self {
            Api::OpenAi => {
                let data = answer["data"].as_array().ok_or("no `data` array")?;
                let mut indexed = data
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let index = d["index"].as_u64().map(|n| n as usize).unwrap_or(i);
                        Ok((index, floats(&d["embedding"])?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                indexed.sort_by_key(|(i, _)| *i);
                indexed.into_iter().map(|(_, v)| v).collect()
            }
            Api::Ollama => answer["embeddings"]
                .as_array()
                .ok_or("no `embeddings` array")?
                .iter()
                .map(floats)
                .collect::<Result<_, _>>()?,
            Api::Gemini => answer["embeddings"]
                .as_array()
                .ok_or("no `embeddings` array")?
                .iter()
                .map(|e| floats(&e["values"]))
                .collect::<Result<_, _>>()?,
        };
        if out.len() != expected {
            return Err(format!("{} vectors for {expected} texts", out.len()));
        }
        if out.iter().any(|v| v.len() != out[0].len()) {
            return Err("vectors of different sizes".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_has_its_url_and_body() {
        assert_eq!(
            Api::OpenAi.url("http://h/v1/", "m"),
            "http://h/v1/embeddings"
        );
        assert_eq!(
            Api::Ollama.url("http://h:11434", "m"),
            "http://h:11434/api/embed"
        );
        assert_eq!(
            Api::Gemini.url("https://g", "text-embedding-004"),
            "https://g/v1beta/models/text-embedding-004:batchEmbedContents"
        );
        let texts = vec!["a".to_string()];
        let b = Api::OpenAi.body("m", &texts, Some(8), Purpose::Index);
        assert_eq!(
            b,
            json!({"model":"m","input":["a"],"encoding_format":"float","dimensions":8})
        );
        let g = Api::Gemini.body("e", &texts, None, Purpose::Query);
        assert_eq!(g["requests"][0]["taskType"], "RETRIEVAL_QUERY");
        assert_eq!(g["requests"][0]["model"], "models/e");
    }

    #[test]
    fn answers_are_read_in_input_order_and_checked() {
        let openai = json!({"data":[{"embedding":[2.0],"index":1},{"embedding":[1.0],"index":0}]});
        assert_eq!(
            Api::OpenAi.vectors(&openai, 2).unwrap(),
            vec![vec![1.0], vec![2.0]]
        );
        assert!(Api::OpenAi.vectors(&openai, 3).is_err());
        let ollama = json!({"embeddings":[[1.0, 0.0]]});
        assert_eq!(
            Api::Ollama.vectors(&ollama, 1).unwrap(),
            vec![vec![1.0, 0.0]]
        );
        let gemini = json!({"embeddings":[{"values":[0.5]}]});
        assert_eq!(Api::Gemini.vectors(&gemini, 1).unwrap(), vec![vec![0.5]]);
        assert!(
            Api::Ollama
                .vectors(&json!({"embeddings":[[1.0],[1.0, 2.0]]}), 2)
                .is_err()
        );
    }
}
